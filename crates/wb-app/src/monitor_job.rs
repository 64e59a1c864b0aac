//! The monitor job: reads the central audit collection after its cursor
//! ("monitor"), feeds each event to the rules of `wb_core::monitor`, raises
//! what they find in the alert store, and advances the cursor.
//!
//! Delivery is at least once: a crash between raising and moving the cursor
//! replays a page, and the replayed findings only bump the active alerts'
//! counts (the store dedupes by key). On start the job replays up to
//! `WARMUP_EVENTS` events before its cursor without raising anything, so
//! windows, known networks and chain heads survive a restart.
//!
//! An event on which the rules panic is skipped and alerted (`job-panicked`),
//! and a round that panics is caught (`crate::runner::unit`): the monitor goes
//! on with the events after it.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use wb_core::monitor::{ChainLink, Monitor, MonitorConfig, ObservedEvent};
use wb_store::alerts::Triage;
use wb_store::{Alert, AuditQuery, CentralEvent};

use crate::dto::rfc3339;
use crate::error::ServiceResult;
use crate::platform::Platform;

/// The job's name in logs and the `job-panicked` alert.
const JOB: &str = "monitor";
/// The monitor's cursor in the control store.
pub const MONITOR_CURSOR: &str = "monitor";
/// Events read per page.
const PAGE: u32 = 1000;
/// Events before the cursor replayed (without alerting) to rebuild state.
pub const WARMUP_EVENTS: i64 = 50_000;

/// What the job keeps between rounds.
#[derive(Debug)]
pub struct MonitorState {
    monitor: Monitor,
    warmed: bool,
    /// The last event fed to the rules: a round that failed half-way is
    /// retried from the cursor, but no event is observed twice.
    observed_up_to: i64,
    /// Findings not yet stored (a failed round keeps them for the next).
    pending: Vec<wb_core::monitor::AlertDraft>,
}

impl MonitorState {
    pub fn new(config: MonitorConfig) -> MonitorState {
        MonitorState {
            monitor: Monitor::new(config),
            warmed: false,
            observed_up_to: 0,
            pending: Vec::new(),
        }
    }
}

async fn raise_pending(
    platform: &Platform,
    state: &mut MonitorState,
    round: &mut MonitorRound,
) -> ServiceResult<()> {
    while let Some(draft) = state.pending.first() {
        let raised = platform.alerts.raise(draft, platform.now()).await?;
        round.findings += 1;
        if raised.new {
            round.new_alerts += 1;
            tracing::warn!(
                alert = raised.alert.id,
                rule = draft.rule,
                severity = %draft.severity,
                title = %draft.title,
                "alert raised"
            );
        }
        state.pending.remove(0);
    }
    Ok(())
}

/// What one round did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MonitorRound {
    /// Events examined after the cursor.
    pub events: usize,
    /// Findings raised (new alerts plus repeats of active ones).
    pub findings: usize,
    /// Alerts that did not exist before.
    pub new_alerts: usize,
}

/// The monitor's view of a central event; `at` falls back to `now` when the
/// stored time does not parse (the chain check still sees the event).
pub fn observed(e: &CentralEvent, now: OffsetDateTime) -> ObservedEvent {
    let ev = &e.event;
    let intact = ev.fields().hash(&ev.prev_hash, ev.seq) == ev.hash;
    ObservedEvent {
        source: e.source.clone(),
        source_seq: ev.seq,
        at: OffsetDateTime::parse(&ev.at, &Rfc3339).unwrap_or(now),
        actor: ev.actor.clone(),
        auth: ev.auth.clone(),
        client: ev.client.clone(),
        request_id: ev.request_id.clone(),
        company_id: ev.company_id.clone(),
        action: ev.known_action(),
        target: ev.target.clone(),
        outcome: ev.outcome.clone(),
        detail: ev.detail.clone(),
        chain: Some(ChainLink {
            prev_hash: ev.prev_hash.clone(),
            hash: ev.hash.clone(),
            intact,
        }),
    }
}

async fn page(platform: &Platform, after: i64, limit: u32) -> ServiceResult<Vec<CentralEvent>> {
    Ok(platform
        .control
        .central_events(AuditQuery {
            after,
            limit,
            ..AuditQuery::default()
        })
        .await?)
}

/// Replays the events just before the cursor so the rules start with the
/// state they had, raising nothing.
async fn warm_up(platform: &Platform, state: &mut MonitorState, cursor: i64) -> ServiceResult<()> {
    let start = (cursor - WARMUP_EVENTS).max(0);
    // From the very beginning, every source must start at sequence 1.
    state.monitor.expect_complete_sources(start == 0);
    let mut after = start;
    while after < cursor {
        let events = page(platform, after, PAGE).await?;
        let Some(last) = events.last().map(|e| e.central_seq) else {
            break;
        };
        for e in events.iter().take_while(|e| e.central_seq <= cursor) {
            let _ = state.monitor.observe(&observed(e, platform.now()));
        }
        after = last;
    }
    Ok(())
}

/// One round: every event after the cursor, page by page, with the admin set
/// refreshed first. Used by the background loop and by tests.
pub async fn run_monitor_once(
    platform: &Platform,
    state: &mut MonitorState,
) -> ServiceResult<MonitorRound> {
    let mut cursor = platform.control.cursor(MONITOR_CURSOR).await?;
    if !state.warmed {
        warm_up(platform, state, cursor).await?;
        state.warmed = true;
        state.observed_up_to = state.observed_up_to.max(cursor);
    }
    state
        .monitor
        .set_admins(platform.alerts.admin_user_ids().await?);
    let mut round = MonitorRound::default();
    raise_pending(platform, state, &mut round).await?;
    loop {
        let events = page(platform, cursor, PAGE).await?;
        let Some(last) = events.last().map(|e| e.central_seq) else {
            break;
        };
        let seen = state.observed_up_to;
        for e in events.iter().filter(|e| e.central_seq > seen) {
            let event = observed(e, platform.now());
            // One event that makes the rules panic is skipped (and alerted),
            // so it cannot stop the monitoring of everything after it.
            let monitor = &mut state.monitor;
            match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| monitor.observe(&event)))
            {
                Ok(drafts) => state.pending.extend(drafts),
                Err(_) => {
                    tracing::error!(source = %e.source, seq = e.event.seq, central_seq = e.central_seq, "the monitoring rules panicked on an event; it is skipped");
                    let panicked = crate::runner::Panicked {
                        job: JOB,
                        unit: "rules".into(),
                    };
                    crate::runner::alert_panic(&*platform.alerts, &panicked, None, platform.now())
                        .await;
                }
            }
            state.observed_up_to = e.central_seq;
        }
        raise_pending(platform, state, &mut round).await?;
        round.events += events.len();
        platform.control.set_cursor(MONITOR_CURSOR, last).await?;
        cursor = last;
        if events.len() < PAGE as usize {
            break;
        }
    }
    Ok(round)
}

pub const MONITOR_LEASE: &str = "monitor";

/// Runs the monitor every `interval` until `stop` turns true (one last round then).
pub fn spawn_monitor(
    platform: Arc<Platform>,
    config: MonitorConfig,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut state = MonitorState::new(config.clone());
        loop {
            // Alerts are raised by one node at a time.
            if crate::runner::hold_lease(&*platform.control, &platform.node_id, MONITOR_LEASE).await
            {
                let round = run_monitor_once(&platform, &mut state);
                match crate::runner::unit(&platform, JOB, "round", None, round).await {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "monitor round failed; retrying"),
                    // Start afresh: warm up again from the cursor.
                    Err(_) => state = MonitorState::new(config.clone()),
                }
            }
            let stopping = *stop.borrow() || {
                tokio::select! {
                    _ = tokio::time::sleep(interval) => false,
                    changed = stop.changed() => changed.is_err() || *stop.borrow(),
                }
            };
            if stopping {
                let round = run_monitor_once(&platform, &mut state);
                if let Ok(Err(e)) = crate::runner::unit(&platform, JOB, "round", None, round).await
                {
                    tracing::error!(error = %e, "final monitor round failed");
                }
                break;
            }
        }
    })
}

/// An alert as shown by `workbooks alerts` (and later the staff API).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AlertView {
    pub id: i64,
    pub rule: String,
    pub severity: String,
    pub state: String,
    pub title: String,
    pub detail: String,
    pub company_id: Option<String>,
    pub count: i64,
    pub first_seen: String,
    pub last_seen: String,
    pub raised_at: String,
    pub acknowledged: Option<TriageView>,
    pub resolved: Option<TriageView>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TriageView {
    pub by: String,
    pub at: String,
    pub reason: String,
}

impl From<&Triage> for TriageView {
    fn from(t: &Triage) -> TriageView {
        TriageView {
            by: t.by.clone(),
            at: rfc3339(t.at),
            reason: t.reason.clone(),
        }
    }
}

impl From<&Alert> for AlertView {
    fn from(a: &Alert) -> AlertView {
        AlertView {
            id: a.id,
            rule: a.rule.clone(),
            severity: a.severity.as_str().into(),
            state: a.state.as_str().into(),
            title: a.title.clone(),
            detail: a.detail.clone(),
            company_id: a.company_id.clone(),
            count: a.count,
            first_seen: rfc3339(a.first_seen),
            last_seen: rfc3339(a.last_seen),
            raised_at: rfc3339(a.raised_at),
            acknowledged: a.acknowledged.as_ref().map(TriageView::from),
            resolved: a.resolved.as_ref().map(TriageView::from),
        }
    }
}
