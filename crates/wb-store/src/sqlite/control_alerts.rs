//! `AlertStore` for the control database: the alerts table and its triage,
//! audited in the control plane's hash chain.

use async_trait::async_trait;
use rusqlite::{params, OptionalExtension, Row, Transaction};
use time::OffsetDateTime;
use wb_core::monitor::{AlertDraft, AlertState};

use super::conn::{parse_ts, ts};
use super::control::{append_audit, SqliteControl};
use crate::alerts::{Alert, AlertStore, Raised, Triage};
use crate::model::{Action, Actor, AuditEvent, Outcome};
use crate::StoreError;

const ALERT_COLUMNS: &str = "id, rule, severity, state, dedupe_key, title, detail, company_id, \
     count, first_seen, last_seen, raised_at, acknowledged_by, acknowledged_at, \
     acknowledge_reason, resolved_by, resolved_at, resolve_reason";

/// Longest reason kept; longer ones are cut (reasons are free text from operators).
const MAX_REASON_CHARS: usize = 500;

struct AlertRow {
    id: i64,
    rule: String,
    severity: String,
    state: String,
    dedupe_key: String,
    title: String,
    detail: String,
    company_id: Option<String>,
    count: i64,
    first_seen: String,
    last_seen: String,
    raised_at: String,
    ack: [Option<String>; 3],
    res: [Option<String>; 3],
}

fn alert_row(r: &Row<'_>) -> rusqlite::Result<AlertRow> {
    Ok(AlertRow {
        id: r.get(0)?,
        rule: r.get(1)?,
        severity: r.get(2)?,
        state: r.get(3)?,
        dedupe_key: r.get(4)?,
        title: r.get(5)?,
        detail: r.get(6)?,
        company_id: r.get(7)?,
        count: r.get(8)?,
        first_seen: r.get(9)?,
        last_seen: r.get(10)?,
        raised_at: r.get(11)?,
        ack: [r.get(12)?, r.get(13)?, r.get(14)?],
        res: [r.get(15)?, r.get(16)?, r.get(17)?],
    })
}

fn triage(parts: [Option<String>; 3]) -> Result<Option<Triage>, StoreError> {
    match parts {
        [Some(by), Some(at), reason] => Ok(Some(Triage {
            by,
            at: parse_ts(&at)?,
            reason: reason.unwrap_or_default(),
        })),
        _ => Ok(None),
    }
}

impl AlertRow {
    fn into_alert(self) -> Result<Alert, StoreError> {
        Ok(Alert {
            id: self.id,
            severity: self
                .severity
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("alert severity {:?}", self.severity)))?,
            state: self
                .state
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("alert state {:?}", self.state)))?,
            rule: self.rule,
            dedupe_key: self.dedupe_key,
            title: self.title,
            detail: self.detail,
            company_id: self.company_id,
            count: self.count,
            first_seen: parse_ts(&self.first_seen)?,
            last_seen: parse_ts(&self.last_seen)?,
            raised_at: parse_ts(&self.raised_at)?,
            acknowledged: triage(self.ack)?,
            resolved: triage(self.res)?,
        })
    }
}

fn load(tx: &Transaction<'_>, id: i64) -> Result<Option<Alert>, StoreError> {
    tx.prepare_cached(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1"))?
        .query_row([id], alert_row)
        .optional()?
        .map(AlertRow::into_alert)
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
fn triage_alert(
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
    let outcome = match load(tx, id)? {
        None => Err(StoreError::NotFound("alert")),
        Some(alert) => match alert.state.transition(to) {
            Err(e) => Err(StoreError::Conflict(format!("alert {id}: {e}"))),
            Ok(_) => {
                let sql = match to {
                    AlertState::Acknowledged => {
                        "UPDATE alerts SET state = ?1, acknowledged_by = ?2, acknowledged_at = ?3,
                                acknowledge_reason = ?4 WHERE id = ?5"
                    }
                    _ => {
                        "UPDATE alerts SET state = ?1, resolved_by = ?2, resolved_at = ?3,
                                resolve_reason = ?4 WHERE id = ?5"
                    }
                };
                tx.execute(sql, params![to.as_str(), by.id, ts(at), reason, id])?;
                load(tx, id)?.ok_or(StoreError::NotFound("alert"))
            }
        },
    };
    if let Err(e) = &outcome {
        event.outcome = Outcome::Failure;
        event.detail = Some(format!("{reason} (refused: {e})"));
    }
    append_audit(tx, &event)?;
    Ok(outcome)
}

impl SqliteControl {
    async fn triage(
        &self,
        id: i64,
        to: AlertState,
        by: &Actor,
        reason: &str,
        at: OffsetDateTime,
    ) -> Result<Alert, StoreError> {
        let (by, reason) = (by.clone(), clean_reason(reason));
        if reason.is_empty() {
            return Err(StoreError::Conflict(
                "a reason is required to triage an alert".into(),
            ));
        }
        self.write(None, move |tx| triage_alert(tx, id, to, &by, &reason, at))
            .await?
    }
}

#[async_trait]
impl AlertStore for SqliteControl {
    async fn raise(&self, draft: &AlertDraft, at: OffsetDateTime) -> Result<Raised, StoreError> {
        let draft = draft.clone();
        self.write(None, move |tx| {
            let active: Option<i64> = tx
                .prepare_cached(
                    "SELECT id FROM alerts WHERE dedupe_key = ?1 AND state <> 'resolved'",
                )?
                .query_row([&draft.dedupe_key], |r| r.get(0))
                .optional()?;
            if let Some(id) = active {
                let current = load(tx, id)?.ok_or(StoreError::NotFound("alert"))?;
                let last_seen = current.last_seen.max(draft.at);
                let severity = current.severity.max(draft.severity);
                tx.execute(
                    "UPDATE alerts SET count = count + 1, last_seen = ?1, detail = ?2, severity = ?3
                     WHERE id = ?4",
                    params![ts(last_seen), draft.detail, severity.as_str(), id],
                )?;
                let alert = load(tx, id)?.ok_or(StoreError::NotFound("alert"))?;
                return Ok(Raised { alert, new: false });
            }
            tx.execute(
                "INSERT INTO alerts (rule, severity, state, dedupe_key, title, detail, company_id,
                                     count, first_seen, last_seen, raised_at)
                 VALUES (?1, ?2, 'open', ?3, ?4, ?5, ?6, 1, ?7, ?7, ?8)",
                params![
                    draft.rule,
                    draft.severity.as_str(),
                    draft.dedupe_key,
                    draft.title,
                    draft.detail,
                    draft.company_id,
                    ts(draft.at),
                    ts(at)
                ],
            )?;
            let id = tx.last_insert_rowid();
            // Company-less on purpose: triage notes are for operators, not for
            // the company's own audit view; the company is named in the detail.
            let company = draft
                .company_id
                .as_deref()
                .map(|c| format!(" (company {c})"))
                .unwrap_or_default();
            append_audit(
                tx,
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
            )?;
            let alert = load(tx, id)?.ok_or(StoreError::NotFound("alert"))?;
            Ok(Raised { alert, new: true })
        })
        .await
    }

    async fn list(&self, state: Option<AlertState>, limit: u32) -> Result<Vec<Alert>, StoreError> {
        let state = state.map(|s| s.as_str());
        self.readers
            .with(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {ALERT_COLUMNS} FROM alerts WHERE (?1 IS NULL OR state = ?1)
                     ORDER BY id DESC LIMIT ?2"
                ))?;
                let rows = stmt.query_map(params![state, limit.clamp(1, 10_000)], alert_row)?;
                rows.map(|r| r?.into_alert()).collect()
            })
            .await
    }

    async fn active_for_company(
        &self,
        company_id: &str,
        limit: u32,
    ) -> Result<Vec<Alert>, StoreError> {
        let company_id = company_id.to_string();
        self.readers
            .with(move |conn| {
                let mut stmt = conn.prepare_cached(&format!(
                    "SELECT {ALERT_COLUMNS} FROM alerts
                     WHERE state IN ('open', 'acknowledged') AND company_id = ?1
                     ORDER BY id DESC LIMIT ?2"
                ))?;
                let rows =
                    stmt.query_map(params![company_id, limit.clamp(1, 10_000)], alert_row)?;
                rows.map(|r| r?.into_alert()).collect()
            })
            .await
    }

    async fn get(&self, id: i64) -> Result<Option<Alert>, StoreError> {
        self.readers
            .with(move |conn| {
                conn.prepare_cached(&format!("SELECT {ALERT_COLUMNS} FROM alerts WHERE id = ?1"))?
                    .query_row([id], alert_row)
                    .optional()?
                    .map(AlertRow::into_alert)
                    .transpose()
            })
            .await
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
        self.readers
            .with(|conn| {
                let mut stmt = conn.prepare_cached(
                    "SELECT DISTINCT m.user_id FROM memberships m
                     JOIN companies c ON c.id = m.company_id
                     WHERE m.role IN ('owner', 'admin') AND c.status = 'active'
                     ORDER BY m.user_id",
                )?;
                let rows = stmt.query_map([], |r| r.get(0))?;
                Ok(rows.collect::<Result<Vec<String>, _>>()?)
            })
            .await
    }
}
