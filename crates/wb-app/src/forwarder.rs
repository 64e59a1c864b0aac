//! Collects every source chain (the control plane's and each open company's)
//! into the central audit collection, and signs checkpoints over what it holds.
//!
//! Copies are idempotent (source, sequence), so a crash between reading and
//! recording, or two nodes forwarding at once, never duplicates or loses events.
//! Each company's copy and each source's checkpoint is a unit of work
//! (`crate::runner::unit`): a panic in one is caught and alerted, and the others go on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;
use wb_core::audit::{Checkpoint, GENESIS};
use wb_core::Action;
use wb_store::{Actor, AuditEvent, Outcome, StoredAuditEvent, TenantStore};

use crate::dto::rfc3339;
use crate::error::ServiceResult;
use crate::platform::Platform;

pub const CHECKPOINT_EVERY: Duration = Duration::from_secs(10);
/// Job names in logs and the `job-panicked` alert.
const JOB: &str = "audit-forwarder";
const CHECKPOINT_JOB: &str = "audit-checkpoint";
const CHECKPOINT_AFTER_EVENTS: i64 = 1000;
const PAGE: u32 = 1000;

pub const CONTROL_SOURCE: &str = "control";

pub fn company_source(company_id: &str) -> String {
    format!("company:{company_id}")
}

/// What the forwarder knows of each source between rounds.
#[derive(Default)]
pub struct ForwarderState {
    forwarded: HashMap<String, i64>,
    checkpointed: HashMap<String, i64>,
    last_checkpoints: HashMap<String, Checkpoint>,
    last_checkpoint: Option<Instant>,
    caught_up: bool,
    /// Open stores known to be recorded companies (see `recorded`).
    recorded: std::collections::HashSet<String>,
}

/// True when the open store is a recorded company. A store staged by a restore
/// or a backup verification is not (yet): its events are collected once it is
/// recorded, and a discarded one leaves no central copy behind.
async fn recorded(platform: &Platform, state: &mut ForwarderState, company_id: &str) -> bool {
    if state.recorded.contains(company_id) {
        return true;
    }
    match platform.control.company(company_id).await {
        Ok(Some(_)) => {
            state.recorded.insert(company_id.to_string());
            true
        }
        Ok(None) => false,
        // Unknown: collect as before rather than fall behind.
        Err(_) => true,
    }
}

async fn forwarded_head(
    platform: &Platform,
    state: &mut ForwarderState,
    source: &str,
) -> ServiceResult<i64> {
    if let Some(seq) = state.forwarded.get(source) {
        return Ok(*seq);
    }
    let seq = platform.control.central_head(source).await?;
    state.forwarded.insert(source.to_string(), seq);
    Ok(seq)
}

async fn copy(
    platform: &Platform,
    state: &mut ForwarderState,
    source: &str,
    events: Vec<StoredAuditEvent>,
) -> ServiceResult<usize> {
    let Some(last) = events.last().map(|e| e.seq) else {
        return Ok(0);
    };
    let inserted = platform
        .control
        .central_append(source, &platform.node_id, events)
        .await?;
    state.forwarded.insert(source.to_string(), last);
    Ok(inserted)
}

async fn forward_tenant(
    platform: &Platform,
    state: &mut ForwarderState,
    tenant: &Arc<dyn TenantStore>,
) -> ServiceResult<usize> {
    let source = company_source(tenant.company_id());
    let mut after = forwarded_head(platform, state, &source).await?;
    let mut total = 0;
    while tenant.audit_head() > after {
        let events = tenant.audit_events(after, PAGE).await?;
        let Some(last) = events.last().map(|e| e.seq) else {
            break;
        };
        total += copy(platform, state, &source, events).await?;
        after = last;
    }
    Ok(total)
}

/// One round: copies what is new in the control chain and in every open company.
/// A source that fails is logged and retried next round; the others go on.
pub async fn forward_once(platform: &Platform, state: &mut ForwarderState) -> ServiceResult<usize> {
    let mut total = 0;
    loop {
        let after = forwarded_head(platform, state, CONTROL_SOURCE).await?;
        let events = platform.control.audit_events(None, after, PAGE).await?;
        if events.is_empty() {
            break;
        }
        total += copy(platform, state, CONTROL_SOURCE, events).await?;
    }
    for tenant in platform.tenants.open_tenants() {
        if !recorded(platform, state, tenant.company_id()).await {
            continue;
        }
        match forward_unit(platform, state, &tenant).await {
            Ok(n) => total += n,
            Err(e) => {
                tracing::error!(company = tenant.company_id(), error = %e, "collecting a company's audit events failed")
            }
        }
    }
    Ok(total)
}

/// `forward_tenant` as a unit of the job's work: a panic is caught, alerted
/// and returned as an error; the company's position is read again next time.
async fn forward_unit(
    platform: &Platform,
    state: &mut ForwarderState,
    tenant: &Arc<dyn TenantStore>,
) -> anyhow::Result<usize> {
    let id = tenant.company_id();
    let work = forward_tenant(platform, state, tenant);
    match crate::runner::unit(platform, JOB, id, Some(id), work).await {
        Ok(result) => Ok(result?),
        Err(panicked) => {
            state.forwarded.remove(&company_source(id));
            Err(panicked.into())
        }
    }
}

/// Opens every company once so events written before a crash are collected.
pub async fn catch_up_all(platform: &Platform, state: &mut ForwarderState) -> ServiceResult<usize> {
    let mut total = forward_once(platform, state).await?;
    let mut failed = 0;
    for id in platform.company_ids().await? {
        let result = match platform.tenant(&id).await {
            Ok(tenant) => forward_unit(platform, state, &tenant).await,
            Err(e) => Err(e.into()),
        };
        match result {
            Ok(n) => total += n,
            Err(e) => {
                failed += 1;
                tracing::error!(company = %id, error = %e, "catching up a company's audit events failed");
            }
        }
    }
    if failed > 0 {
        return Err(anyhow::anyhow!("{failed} companies could not be caught up").into());
    }
    Ok(total)
}

/// Signs a checkpoint for every source whose collected chain has grown, and
/// records each company checkpoint in the platform chain too, so drains carry
/// the checkpoints off the machine (a witness the database's owner cannot rewrite).
pub async fn checkpoint_once(
    platform: &Platform,
    state: &mut ForwarderState,
) -> ServiceResult<usize> {
    let mut written = 0;
    let sources: Vec<(String, i64)> = state
        .forwarded
        .iter()
        .map(|(s, q)| (s.clone(), *q))
        .collect();
    for (source, head) in sources {
        let work = checkpoint_source(platform, state, &source, head);
        match crate::runner::unit(platform, CHECKPOINT_JOB, &source, None, work).await {
            Ok(Ok(true)) => written += 1,
            Ok(Ok(false)) => {}
            Ok(Err(e)) => {
                tracing::error!(%source, error = %e, "signing an audit checkpoint failed")
            }
            Err(_) => {
                state.last_checkpoints.remove(&source);
            }
        }
    }
    state.last_checkpoint = Some(Instant::now());
    Ok(written)
}

async fn checkpoint_source(
    platform: &Platform,
    state: &mut ForwarderState,
    source: &str,
    head: i64,
) -> ServiceResult<bool> {
    let previous = match state.last_checkpoints.get(source) {
        Some(cp) => Some(cp.clone()),
        None => platform.control.last_checkpoint(source).await?,
    };
    let done = previous.as_ref().map_or(0, |c| c.seq);
    state.checkpointed.insert(source.to_string(), done);
    if head <= done {
        return Ok(false);
    }
    let Some(last) = platform
        .control
        .central_source_events(source, head - 1, 1)
        .await?
        .pop()
    else {
        return Ok(false);
    };
    let mut checkpoint = Checkpoint {
        source: source.to_string(),
        seq: last.event.seq,
        hash: last.event.hash.clone(),
        at: rfc3339(platform.now()),
        node: platform.node_id.clone(),
        prev: previous
            .as_ref()
            .map_or(GENESIS.to_string(), Checkpoint::digest),
        signature: Vec::new(),
    };
    checkpoint.signature = platform.node_key.sign(&checkpoint.message());
    platform.control.append_checkpoint(&checkpoint).await?;
    if source != CONTROL_SOURCE {
        // Not for the platform chain itself: that would grow it every round.
        let event = AuditEvent {
            at: platform.now(),
            actor: Actor::system("audit"),
            company_id: None,
            action: Action::AuditCheckpoint,
            target: Some(source.to_string()),
            outcome: Outcome::Success,
            detail: Some(format!(
                "seq={} hash={} node={} key={} signature={}",
                checkpoint.seq,
                checkpoint.hash,
                checkpoint.node,
                platform.node_key.public_key_hex(),
                hex::encode(&checkpoint.signature)
            )),
        };
        platform.control.audit(&event).await?;
    }
    state
        .checkpointed
        .insert(source.to_string(), checkpoint.seq);
    state
        .last_checkpoints
        .insert(source.to_string(), checkpoint);
    Ok(true)
}

fn checkpoint_due(state: &ForwarderState, every: Duration) -> bool {
    let grown = state.forwarded.iter().any(|(s, q)| {
        q - state.checkpointed.get(s).copied().unwrap_or(0) >= CHECKPOINT_AFTER_EVENTS
    });
    grown || state.last_checkpoint.is_none_or(|t| t.elapsed() >= every)
}

/// One round of the job: catch up once, forward, and sign checkpoints when due.
async fn round(platform: &Platform, state: &mut ForwarderState, checkpoint_every: Duration) {
    if !state.caught_up {
        match catch_up_all(platform, state).await {
            Ok(_) => state.caught_up = true,
            Err(e) => tracing::error!(error = %e, "audit catch-up failed; will retry"),
        }
    }
    if let Err(e) = forward_once(platform, state).await {
        tracing::error!(error = %e, "audit forwarding failed; will retry");
    }
    if checkpoint_due(state, checkpoint_every)
        && crate::runner::hold_lease(&*platform.control, &platform.node_id, CHECKPOINT_LEASE).await
    {
        if let Err(e) = checkpoint_once(platform, state).await {
            tracing::error!(error = %e, "audit checkpoint failed; will retry");
        }
    }
}

/// Checkpoints are signed on one node at a time, so no source's checkpoint chain forks.
pub const CHECKPOINT_LEASE: &str = "audit-checkpoint";

pub fn spawn(
    platform: Arc<Platform>,
    interval: Duration,
    checkpoint_every: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut state = ForwarderState::default();
        loop {
            // A panic outside a source's unit leaves the state unknown:
            // start afresh (positions are read again from the store).
            let round = round(&platform, &mut state, checkpoint_every);
            if crate::runner::unit(&platform, JOB, "round", None, round)
                .await
                .is_err()
            {
                state = ForwarderState::default();
            }
            if crate::runner::pause(&mut stop, interval).await {
                // A final round so a clean stop leaves nothing uncollected.
                let last = async {
                    let _ = forward_once(&platform, &mut state).await;
                    if crate::runner::hold_lease(
                        &*platform.control,
                        &platform.node_id,
                        CHECKPOINT_LEASE,
                    )
                    .await
                    {
                        let _ = checkpoint_once(&platform, &mut state).await;
                    }
                };
                let _ = crate::runner::unit(&platform, JOB, "round", None, last).await;
                return;
            }
        }
    })
}
