//! `AlertStore` for the PostgreSQL control database: the alerts table and its
//! triage, audited in the control plane's hash chain.
//!
//! Every raise and triage takes the control chain's lock first: they read
//! then write (dedupe, state checks) and most append to the chain anyway, so
//! nodes raising the same finding at once still produce one alert.

use async_trait::async_trait;
use time::OffsetDateTime;
use tokio_postgres::{Row, Transaction};
use wb_core::monitor::{AlertDraft, AlertState};

use super::control::{append_audit, begin, int8, lock_audit, parse_ts, text, ts, PgControl};
use crate::alerts::{Alert, AlertStore, Raised, Triage};
use crate::model::{Action, Actor, AuditEvent, Outcome};
use crate::StoreError;

const ALERT_COLUMNS: &str = "id, rule, severity, state, dedupe_key, title, detail, company_id, \
     count, first_seen, last_seen, raised_at, acknowledged_by, acknowledged_at, \
     acknowledge_reason, resolved_by, resolved_at, resolve_reason";

/// Longest reason kept; longer ones are cut (reasons are free text from operators).
const MAX_REASON_CHARS: usize = 500;

fn triage(r: &Row, first: usize) -> Result<Option<Triage>, StoreError> {
    let by: Option<String> = r.try_get(first)?;
    let at: Option<&str> = r.try_get(first + 1)?;
    let reason: Option<String> = r.try_get(first + 2)?;
    match (by, at) {
        (Some(by), Some(at)) => Ok(Some(Triage {
            by,
            at: parse_ts(at)?,
            reason: reason.unwrap_or_default(),
        })),
        _ => Ok(None),
    }
}

fn alert_row(r: &Row) -> Result<Alert, StoreError> {
    let severity: &str = r.try_get(2)?;
    let state: &str = r.try_get(3)?;
    Ok(Alert {
        id: r.try_get(0)?,
        rule: r.try_get(1)?,
        severity: severity
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("alert severity {severity:?}")))?,
        state: state
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("alert state {state:?}")))?,
        dedupe_key: r.try_get(4)?,
        title: r.try_get(5)?,
        detail: r.try_get(6)?,
        company_id: r.try_get(7)?,
        count: r.try_get(8)?,
        first_seen: parse_ts(r.try_get(9)?)?,
        last_seen: parse_ts(r.try_get(10)?)?,
        raised_at: parse_ts(r.try_get(11)?)?,
        acknowledged: triage(r, 12)?,
        resolved: triage(r, 15)?,
    })
}

async fn load(tx: &Transaction<'_>, id: i64) -> Result<Option<Alert>, StoreError> {
    tx.query_typed_opt(
        &format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1"),
        &[int8(&id)],
    )
    .await?
    .as_ref()
    .map(alert_row)
    .transpose()
}

fn clean_reason(reason: &str) -> String {
    reason
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_REASON_CHARS)
        .collect()
}

/// Moves alert `id` to `to`, auditing the attempt whatever its outcome.
async fn triage_alert(
    tx: &Transaction<'_>,
    id: i64,
    to: AlertState,
    by: &Actor,
    reason: &str,
    at: OffsetDateTime,
) -> Result<Result<Alert, StoreError>, StoreError> {
    let action = match to {
        AlertState::Acknowledged => Action::AlertAcknowledge,
        _ => Action::AlertResolve,
    };
    let mut event = AuditEvent {
        at,
        actor: by.clone(),
        company_id: None,
        action,
        target: Some(format!("alert:{id}")),
        outcome: Outcome::Success,
        detail: Some(reason.to_string()),
    };
    let outcome = match load(tx, id).await? {
        None => Err(StoreError::NotFound("alert")),
        Some(alert) => match alert.state.transition(to) {
            Err(e) => Err(StoreError::Conflict(format!("alert {id}: {e}"))),
            Ok(_) => {
                let sql = match to {
                    AlertState::Acknowledged => {
                        "UPDATE alerts SET state = $1, acknowledged_by = $2, acknowledged_at = $3,
                                acknowledge_reason = $4 WHERE id = $5"
                    }
                    _ => {
                        "UPDATE alerts SET state = $1, resolved_by = $2, resolved_at = $3,
                                resolve_reason = $4 WHERE id = $5"
                    }
                };
                let (state, at) = (to.as_str(), ts(at));
                tx.execute_typed(
                    sql,
                    &[
                        text(&state),
                        text(&by.id),
                        text(&at),
                        text(&reason),
                        int8(&id),
                    ],
                )
                .await?;
                load(tx, id).await?.ok_or(StoreError::NotFound("alert"))
            }
        },
    };
    if let Err(e) = &outcome {
        event.outcome = Outcome::Failure;
        event.detail = Some(format!("{reason} (refused: {e})"));
    }
    append_audit(tx, &event).await?;
    Ok(outcome)
}

impl PgControl {
    async fn triage(
        &self,
        id: i64,
        to: AlertState,
        by: &Actor,
        reason: &str,
        at: OffsetDateTime,
    ) -> Result<Alert, StoreError> {
        let reason = clean_reason(reason);
        if reason.is_empty() {
            return Err(StoreError::Conflict(
                "a reason is required to triage an alert".into(),
            ));
        }
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        lock_audit(&tx).await?;
        let outcome = triage_alert(&tx, id, to, by, &reason, at).await?;
        tx.commit().await?;
        outcome
    }
}

#[async_trait]
impl AlertStore for PgControl {
    async fn raise(&self, draft: &AlertDraft, at: OffsetDateTime) -> Result<Raised, StoreError> {
        let mut conn = self.conn().await?;
        let tx = begin(&mut conn).await?;
        lock_audit(&tx).await?;
        let active: Option<i64> = tx
            .query_typed_opt(
                "SELECT id FROM alerts WHERE dedupe_key = $1 AND state <> 'resolved'",
                &[text(&draft.dedupe_key)],
            )
            .await?
            .map(|r| r.try_get(0))
            .transpose()?;
        if let Some(id) = active {
            let current = load(&tx, id).await?.ok_or(StoreError::NotFound("alert"))?;
            let last_seen = ts(current.last_seen.max(draft.at));
            let severity = current.severity.max(draft.severity).as_str();
            tx.execute_typed(
                "UPDATE alerts SET count = count + 1, last_seen = $1, detail = $2, severity = $3
                 WHERE id = $4",
                &[
                    text(&last_seen),
                    text(&draft.detail),
                    text(&severity),
                    int8(&id),
                ],
            )
            .await?;
            let alert = load(&tx, id).await?.ok_or(StoreError::NotFound("alert"))?;
            tx.commit().await?;
            return Ok(Raised { alert, new: false });
        }
        let (severity, seen, raised) = (draft.severity.as_str(), ts(draft.at), ts(at));
        let id: i64 = tx
            .query_typed_one(
                "INSERT INTO alerts (rule, severity, state, dedupe_key, title, detail, company_id,
                                     count, first_seen, last_seen, raised_at)
                 VALUES ($1, $2, 'open', $3, $4, $5, $6, 1, $7, $7, $8)
                 RETURNING id",
                &[
                    text(&draft.rule),
                    text(&severity),
                    text(&draft.dedupe_key),
                    text(&draft.title),
                    text(&draft.detail),
                    text(&draft.company_id),
                    text(&seen),
                    text(&raised),
                ],
            )
            .await?
            .try_get(0)?;
        // Company-less on purpose: triage notes are for operators, not for
        // the company's own audit view; the company is named in the detail.
        let company = draft
            .company_id
            .as_deref()
            .map(|c| format!(" (company {c})"))
            .unwrap_or_default();
        append_audit(
            &tx,
            &AuditEvent {
                at,
                actor: Actor::system("monitor"),
                company_id: None,
                action: Action::AlertRaise,
                target: Some(format!("alert:{id}")),
                outcome: Outcome::Success,
                detail: Some(format!(
                    "{} {}: {}{company}",
                    draft.severity, draft.rule, draft.title
                )),
            },
        )
        .await?;
        let alert = load(&tx, id).await?.ok_or(StoreError::NotFound("alert"))?;
        tx.commit().await?;
        Ok(Raised { alert, new: true })
    }

    async fn list(&self, state: Option<AlertState>, limit: u32) -> Result<Vec<Alert>, StoreError> {
        let state = state.map(|s| s.as_str());
        let limit = i64::from(limit.clamp(1, 10_000));
        let found = self
            .conn()
            .await?
            .query_typed(
                &format!(
                    "SELECT {ALERT_COLUMNS} FROM alerts WHERE ($1::text IS NULL OR state = $1)
                     ORDER BY id DESC LIMIT $2"
                ),
                &[text(&state), int8(&limit)],
            )
            .await?;
        found.iter().map(alert_row).collect()
    }

    async fn active_for_company(
        &self,
        company_id: &str,
        limit: u32,
    ) -> Result<Vec<Alert>, StoreError> {
        let limit = i64::from(limit.clamp(1, 10_000));
        let found = self
            .conn()
            .await?
            .query_typed(
                &format!(
                    "SELECT {ALERT_COLUMNS} FROM alerts
                     WHERE state IN ('open', 'acknowledged') AND company_id = $1
                     ORDER BY id DESC LIMIT $2"
                ),
                &[text(&company_id), int8(&limit)],
            )
            .await?;
        found.iter().map(alert_row).collect()
    }

    async fn get(&self, id: i64) -> Result<Option<Alert>, StoreError> {
        self.conn()
            .await?
            .query_typed_opt(
                &format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = $1"),
                &[int8(&id)],
            )
            .await?
            .as_ref()
            .map(alert_row)
            .transpose()
    }

    async fn acknowledge(
        &self,
        id: i64,
        by: &Actor,
        reason: &str,
        at: OffsetDateTime,
    ) -> Result<Alert, StoreError> {
        self.triage(id, AlertState::Acknowledged, by, reason, at)
            .await
    }

    async fn resolve(
        &self,
        id: i64,
        by: &Actor,
        reason: &str,
        at: OffsetDateTime,
    ) -> Result<Alert, StoreError> {
        self.triage(id, AlertState::Resolved, by, reason, at).await
    }

    async fn admin_user_ids(&self) -> Result<Vec<String>, StoreError> {
        let found = self
            .conn()
            .await?
            .query_typed(
                "SELECT DISTINCT m.user_id FROM memberships m
                 JOIN companies c ON c.id = m.company_id
                 WHERE m.role IN ('owner', 'admin') AND c.status = 'active'
                 ORDER BY m.user_id",
                &[],
            )
            .await?;
        found.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }
}
