//! Setting, reading and deleting a company's export schedule: validation,
//! sealing the bucket's credentials, and the audit events
//! (`export.schedule.set`, `export.schedule.delete`, in the control chain
//! in the same transaction as the change; the company's audit view shows them).

use time::OffsetDateTime;
use wb_core::Action;
use wb_store::{Actor, AuditEvent, ExportSchedule, Outcome};

use super::{Credentials, Destination};
use crate::error::{ServiceError, ServiceResult};
use crate::exports::ExportKey;
use crate::platform::Platform;

pub const MIN_EVERY_HOURS: u32 = 1;
pub const MAX_EVERY_HOURS: u32 = 720;
/// Longest access key id or secret accepted.
const MAX_CREDENTIAL_CHARS: usize = 512;

/// A schedule as asked for (already parsed from the request).
#[derive(Debug)]
pub struct NewSchedule {
    pub destination: String,
    /// None: keep the stored credentials (only when the destination is unchanged).
    pub credentials: Option<Credentials>,
    pub recipient: String,
    pub every_hours: u32,
}

fn check_credential(what: &str, value: &wb_crypto::Secret) -> ServiceResult<()> {
    let v = value.expose();
    if v.trim().is_empty()
        || v.chars().count() > MAX_CREDENTIAL_CHARS
        || v.chars().any(|c| c.is_control() || c.is_whitespace())
    {
        return Err(ServiceError::unprocessable(
            "invalid-credentials",
            format!("{what} must be 1 to {MAX_CREDENTIAL_CHARS} characters without spaces"),
        ));
    }
    Ok(())
}

/// The target of a schedule's audit events.
pub fn target(schedule_id: &str) -> String {
    format!("export-schedule:{schedule_id}")
}

/// Validates and stores the company's schedule (replacing any), audited.
/// The first push is due at once (the pusher's next round).
pub(crate) async fn set(
    platform: &Platform,
    company_id: &str,
    new: NewSchedule,
    actor: Actor,
) -> ServiceResult<ExportSchedule> {
    if !(MIN_EVERY_HOURS..=MAX_EVERY_HOURS).contains(&new.every_hours) {
        return Err(ServiceError::unprocessable(
            "invalid-schedule",
            format!("every_hours must be between {MIN_EVERY_HOURS} and {MAX_EVERY_HOURS}"),
        ));
    }
    let recipient = ExportKey::recipient(&new.recipient)
        .map_err(|e| ServiceError::unprocessable("invalid-recipient", e.to_string()))?;
    let recipient = recipient.public_recipient().unwrap_or_default();
    let policy = platform.export_destination_policy();
    let destination_url = new.destination.trim().to_string();
    let destination = Destination::parse(&destination_url, &policy)
        .map_err(|e| ServiceError::unprocessable("invalid-destination", e.to_string()))?;
    let current = platform.control.export_schedule(company_id).await?;
    let (sealed, credentials_note) = match (destination.needs_credentials(), new.credentials) {
        (false, None) => (None, ""),
        (false, Some(_)) => {
            return Err(ServiceError::unprocessable(
                "invalid-credentials",
                "a file:// destination takes no access_key_id or secret_access_key",
            ))
        }
        (true, Some(credentials)) => {
            check_credential("access_key_id", &credentials.access_key_id)?;
            check_credential("secret_access_key", &credentials.secret_access_key)?;
            let key = platform.company_key(company_id).await?;
            let sealed = credentials
                .seal(&key, company_id, &destination_url)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            (Some(sealed), "; new credentials")
        }
        (true, None) => match current
            .as_ref()
            .filter(|c| c.destination == destination_url)
            .and_then(|c| c.sealed_credentials.clone())
        {
            Some(kept) => (Some(kept), "; credentials kept"),
            None => {
                return Err(ServiceError::unprocessable(
                    "missing-credentials",
                    "an s3:// destination needs access_key_id and secret_access_key \
                     (they may be left out only to keep those of an unchanged destination)",
                ))
            }
        },
    };
    let now = platform.now();
    let schedule = ExportSchedule {
        company_id: company_id.to_string(),
        id: uuid::Uuid::now_v7().hyphenated().to_string(),
        destination: destination_url,
        recipient: recipient.clone(),
        every_hours: new.every_hours,
        sealed_credentials: sealed,
        created_at: now,
        created_by: actor.id.clone(),
        next_push_at: now,
        last_push_at: None,
        last_push_status: None,
        last_error: None,
        last_object: None,
        failures: 0,
    };
    let audit = AuditEvent {
        at: now,
        actor,
        company_id: Some(company_id.to_string()),
        action: Action::ExportScheduleSet,
        target: Some(target(&schedule.id)),
        outcome: Outcome::Success,
        detail: Some(format!(
            "push to {destination} every {} h, encrypted to age recipient {recipient}{credentials_note}",
            schedule.every_hours
        )),
    };
    platform
        .control
        .put_export_schedule(&schedule, &audit)
        .await?;
    Ok(schedule)
}

/// The company's schedule and, for an s3 destination, its access key id.
pub(crate) async fn get(
    platform: &Platform,
    company_id: &str,
) -> ServiceResult<Option<(ExportSchedule, Option<String>)>> {
    let Some(schedule) = platform.control.export_schedule(company_id).await? else {
        return Ok(None);
    };
    let key_id = match &schedule.sealed_credentials {
        Some(sealed) => {
            let key = platform.company_key(company_id).await?;
            Credentials::open(sealed, &key, company_id, &schedule.destination)
                .ok()
                .map(|c| c.access_key_id.expose().to_string())
        }
        None => None,
    };
    Ok(Some((schedule, key_id)))
}

/// Deletes the company's schedule (404 when it has none), audited.
pub(crate) async fn delete(
    platform: &Platform,
    company_id: &str,
    actor: Actor,
) -> ServiceResult<()> {
    let current = platform
        .control
        .export_schedule(company_id)
        .await?
        .ok_or_else(|| ServiceError::not_found("export schedule"))?;
    let audit = AuditEvent {
        at: platform.now(),
        actor,
        company_id: Some(company_id.to_string()),
        action: Action::ExportScheduleDelete,
        target: Some(target(&current.id)),
        outcome: Outcome::Success,
        detail: Some(format!(
            "no more pushes to {}",
            describe_url(&current.destination)
        )),
    };
    Ok(platform
        .control
        .delete_export_schedule(company_id, &audit)
        .await?)
}

/// A stored destination URL as logs and audit events name it.
pub fn describe_url(url: &str) -> String {
    match crate::objects::ObjectStoreUrl::parse(url) {
        Ok(parsed) => parsed.to_string(),
        Err(_) => "(an invalid destination)".into(),
    }
}

/// When to try again after `failures` failed pushes in a row: 5 minutes,
/// doubling, never later than the schedule's period.
pub fn retry_at(now: OffsetDateTime, failures: u32, every_hours: u32) -> OffsetDateTime {
    let period = time::Duration::hours(i64::from(every_hours.max(1)));
    let backoff = time::Duration::minutes(5) * 2i32.pow(failures.saturating_sub(1).min(10));
    now + backoff.min(period)
}

/// When the next push is due after a successful one.
pub fn next_at(now: OffsetDateTime, every_hours: u32) -> OffsetDateTime {
    now + time::Duration::hours(i64::from(every_hours.max(1)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn retries_back_off_up_to_the_period() {
        let now = datetime!(2026-01-01 00:00 UTC);
        let minutes = |failures, every| (retry_at(now, failures, every) - now).whole_minutes();
        assert_eq!([1, 2, 3, 4, 5].map(|n| minutes(n, 24)), [5, 10, 20, 40, 80]);
        assert_eq!(minutes(5, 1), 60);
        assert_eq!(minutes(40, 24), 24 * 60);
        assert_eq!((next_at(now, 24) - now).whole_hours(), 24);
    }
}
