//! Delivers the outbox: on the one node holding the `mail` lease, every
//! round hands each due message to the sender. Each message is a unit of
//! work of its own: a failure or a panic is recorded against that message
//! (retried with backoff, given up after `MAX_ATTEMPTS` with an audit event)
//! and the round goes on with the others.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use wb_core::Action;
use wb_store::{Actor, AuditEvent, Delivery, OutboxMessage, Outcome};

use super::{open, retry_after, MAX_ATTEMPTS};
use crate::platform::Platform;

pub const JOB: &str = "mail";
pub const EVERY: Duration = Duration::from_secs(1);
/// Messages per round: a burst drains over several rounds, never all at once.
const PER_ROUND: u32 = 50;

/// What one round did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RoundReport {
    pub sent: usize,
    pub retried: usize,
    pub given_up: usize,
}

pub fn spawn(
    platform: Arc<Platform>,
    every: Duration,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if crate::runner::pause(&mut stop, every).await {
                return;
            }
            if !crate::runner::hold_lease(&*platform.control, &platform.node_id, JOB).await {
                continue;
            }
            let round = deliver_due(&platform);
            match crate::runner::unit(&platform, JOB, "round", None, round).await {
                Ok(Ok(report)) if report != RoundReport::default() => {
                    tracing::info!(?report, "mail round")
                }
                Ok(Ok(_)) | Err(_) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "mail round failed"),
            }
        }
    })
}

/// One round: every due message, each on its own.
pub async fn deliver_due(platform: &Platform) -> anyhow::Result<RoundReport> {
    let mut report = RoundReport::default();
    let Some(sender) = platform.mail_sender() else {
        return Ok(report);
    };
    let due = platform
        .control
        .due_messages(platform.now(), PER_ROUND)
        .await?;
    for queued in due {
        let attempt = async {
            let message = open(platform, &queued)?;
            sender.send(&queued.id, &message).await
        };
        let outcome = match crate::runner::unit(platform, JOB, &queued.id, None, attempt).await {
            Ok(outcome) => outcome,
            Err(_) => Err("the delivery attempt panicked".to_string()),
        };
        let delivery = judge(platform, &queued, outcome);
        match &delivery {
            Delivery::Sent { .. } => report.sent += 1,
            Delivery::Retry { .. } => report.retried += 1,
            Delivery::GiveUp { error, .. } => {
                report.given_up += 1;
                give_up(platform, &queued, error).await;
            }
        }
        if let Err(e) = platform
            .control
            .record_delivery(&queued.id, &delivery)
            .await
        {
            tracing::warn!(message = %queued.id, error = %e, "cannot record a delivery");
        }
    }
    Ok(report)
}

fn judge(platform: &Platform, queued: &OutboxMessage, outcome: Result<(), String>) -> Delivery {
    let now = platform.now();
    match outcome {
        Ok(()) => Delivery::Sent { at: now },
        Err(error) if queued.attempts + 1 >= MAX_ATTEMPTS => Delivery::GiveUp { at: now, error },
        Err(error) => {
            tracing::info!(message = %queued.id, attempts = queued.attempts + 1, %error, "mail delivery failed; will retry");
            Delivery::Retry {
                retry_at: retry_after(queued.attempts, now),
                error,
            }
        }
    }
}

async fn give_up(platform: &Platform, queued: &OutboxMessage, error: &str) {
    tracing::warn!(message = %queued.id, %error, "mail given up");
    let event = AuditEvent {
        at: platform.now(),
        actor: Actor::system("mail"),
        company_id: None,
        action: Action::MailUndeliverable,
        target: Some(format!("outbox:{}", queued.id)),
        outcome: Outcome::Failure,
        detail: Some(format!("after {} attempts: {error}", queued.attempts + 1)),
    };
    if let Err(e) = platform.control.audit(&event).await {
        tracing::error!(error = %e, "cannot audit an undeliverable message");
    }
}
