//! Email: invitations, password resets and security notices.
//!
//! A request never waits for a mail server: it queues the message in the
//! control store's outbox (`queue`), sealed under the outbox key, and the
//! deliverer job (`deliverer`) hands due messages to the configured
//! [`MailSender`] (`crate::mailer`), retrying with backoff and giving up, audited,
//! after [`MAX_ATTEMPTS`].

pub mod deliverer;

pub use crate::mailer::{MailSender, Message};

use time::OffsetDateTime;
use wb_store::OutboxMessage;

use crate::error::ServiceResult;
use crate::keyring::outbox_message_aad;
use crate::platform::Platform;

/// Delivery attempts before a message is given up.
pub const MAX_ATTEMPTS: u32 = 8;

/// Queues `message` for delivery; returns its outbox id.
pub async fn queue(platform: &Platform, message: &Message) -> ServiceResult<String> {
    let id = uuid::Uuid::now_v7().to_string();
    let plain =
        serde_json::to_vec(message).map_err(|e| anyhow::anyhow!("encoding a message: {e}"))?;
    let sealed = platform
        .keyring()
        .outbox_key()
        .seal(&plain, &outbox_message_aad(&id))
        .map_err(|e| anyhow::anyhow!("sealing a message: {e}"))?;
    let now = platform.now();
    platform
        .control
        .enqueue_message(&OutboxMessage {
            id: id.clone(),
            recipient: message.to.clone(),
            sealed_message: sealed,
            created_at: now,
            attempts: 0,
            next_attempt_at: now,
        })
        .await?;
    Ok(id)
}

/// A queued message, opened.
pub(crate) fn open(platform: &Platform, queued: &OutboxMessage) -> Result<Message, String> {
    let plain = crate::keyring::open_with_any(
        &platform.keyring().outbox_keys(),
        &queued.sealed_message,
        &outbox_message_aad(&queued.id),
    )
    .ok_or_else(|| "the message does not open under this deployment's key".to_string())?;
    serde_json::from_slice(&plain).map_err(|e| format!("the message is malformed: {e}"))
}

/// When to try again after `attempts` failed attempts: 30 s, doubling, at
/// most an hour apart.
pub fn retry_after(attempts: u32, now: OffsetDateTime) -> OffsetDateTime {
    let seconds = 30u64.saturating_mul(1u64 << attempts.min(7)).min(3600);
    now + time::Duration::seconds(i64::try_from(seconds).unwrap_or(3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_bounded() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let gaps: Vec<i64> = (0..12)
            .map(|a| (retry_after(a, now) - now).whole_seconds())
            .collect();
        assert_eq!(&gaps[..4], &[30, 60, 120, 240]);
        assert!(gaps.windows(2).all(|w| w[0] <= w[1]));
        assert!(gaps.iter().all(|g| *g <= 3600));
    }
}
