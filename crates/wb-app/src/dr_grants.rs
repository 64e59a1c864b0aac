//! Staff access grants in the configuration backup: every grant with its
//! approvals and ending, so a company's access-transparency history (which
//! is never deleted) survives the loss of the control database. What was
//! done under each grant is in the company's own trail, which ships apart.

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime};
use wb_core::grants::{Decision, EndKind, Ending, Grant, LegalMandate, Side};

use crate::dto::rfc3339;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct DecisionConfig {
    by: String,
    at: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct GrantConfig {
    pub(crate) id: String,
    pub(crate) company_id: String,
    requested_by: String,
    reason: String,
    scope: String,
    duration_minutes: i64,
    ticket: Option<String>,
    mandate_reference: Option<String>,
    mandate_disclose_after: Option<String>,
    requested_at: String,
    starts_at: Option<String>,
    company_approval: Option<DecisionConfig>,
    management_approval: Option<DecisionConfig>,
    /// `denied` or `revoked`, by `company` or `management`.
    ended_kind: Option<String>,
    ended_side: Option<String>,
    ended: Option<DecisionConfig>,
}

fn time(text: &str) -> anyhow::Result<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).with_context(|| format!("bad time {text:?}"))
}

fn decision_of(d: &Decision) -> DecisionConfig {
    DecisionConfig {
        by: d.by.clone(),
        at: rfc3339(d.at),
    }
}

fn decision(d: &DecisionConfig) -> anyhow::Result<Decision> {
    Ok(Decision {
        by: d.by.clone(),
        at: time(&d.at)?,
    })
}

impl GrantConfig {
    pub(crate) fn of(g: &Grant) -> GrantConfig {
        GrantConfig {
            id: g.id.clone(),
            company_id: g.company_id.clone(),
            requested_by: g.requested_by.clone(),
            reason: g.reason.clone(),
            scope: g.scope.as_str().to_string(),
            duration_minutes: g.duration.whole_minutes(),
            ticket: g.ticket.clone(),
            mandate_reference: g.legal_mandate.as_ref().map(|m| m.reference.clone()),
            mandate_disclose_after: g
                .legal_mandate
                .as_ref()
                .and_then(|m| m.disclose_after)
                .map(rfc3339),
            requested_at: rfc3339(g.requested_at),
            starts_at: g.starts_at.map(rfc3339),
            company_approval: g.company_approval.as_ref().map(decision_of),
            management_approval: g.management_approval.as_ref().map(decision_of),
            ended_kind: g.ending.as_ref().map(|e| {
                match e.kind {
                    EndKind::Denied => "denied",
                    EndKind::Revoked => "revoked",
                }
                .to_string()
            }),
            ended_side: g.ending.as_ref().map(|e| e.side.as_str().to_string()),
            ended: g.ending.as_ref().map(|e| decision_of(&e.decision)),
        }
    }

    pub(crate) fn grant(&self) -> anyhow::Result<Grant> {
        let ending = match (&self.ended_kind, &self.ended_side, &self.ended) {
            (None, None, None) => None,
            (Some(kind), Some(side), Some(by)) => Some(Ending {
                kind: match kind.as_str() {
                    "denied" => EndKind::Denied,
                    "revoked" => EndKind::Revoked,
                    other => bail!("grant {}: unknown ending {other:?}", self.id),
                },
                side: match side.as_str() {
                    "company" => Side::Company,
                    "management" => Side::Management,
                    other => bail!("grant {}: unknown side {other:?}", self.id),
                },
                decision: decision(by)?,
            }),
            _ => bail!("grant {}: an incomplete ending", self.id),
        };
        Ok(Grant {
            id: self.id.clone(),
            company_id: self.company_id.clone(),
            requested_by: self.requested_by.clone(),
            reason: self.reason.clone(),
            scope: self
                .scope
                .parse()
                .with_context(|| format!("grant {}", self.id))?,
            duration: Duration::minutes(self.duration_minutes),
            ticket: self.ticket.clone(),
            legal_mandate: match &self.mandate_reference {
                Some(reference) => Some(LegalMandate {
                    reference: reference.clone(),
                    disclose_after: self
                        .mandate_disclose_after
                        .as_deref()
                        .map(time)
                        .transpose()?,
                }),
                None => None,
            },
            requested_at: time(&self.requested_at)?,
            starts_at: self.starts_at.as_deref().map(time).transpose()?,
            company_approval: self.company_approval.as_ref().map(decision).transpose()?,
            management_approval: self
                .management_approval
                .as_ref()
                .map(decision)
                .transpose()?,
            ending,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;
    use wb_core::grants::GrantScope;

    #[test]
    fn a_grant_comes_back_as_it_was() {
        let at = datetime!(2026-12-04 10:00:00.123 UTC);
        let grant = Grant {
            id: "grt_0123456789abcdef0123".into(),
            company_id: "c1".into(),
            requested_by: "staff:s1".into(),
            reason: "Ticket 9: a missing invoice".into(),
            scope: GrantScope::Files,
            duration: Duration::minutes(90),
            ticket: Some("SUP-9".into()),
            legal_mandate: Some(LegalMandate {
                reference: "Order 1".into(),
                disclose_after: Some(at + Duration::days(3)),
            }),
            requested_at: at,
            starts_at: Some(at + Duration::hours(1)),
            company_approval: Some(Decision {
                by: "user:u1".into(),
                at: at + Duration::minutes(5),
            }),
            management_approval: None,
            ending: Some(Ending {
                kind: EndKind::Revoked,
                side: Side::Management,
                decision: Decision {
                    by: "staff:m1".into(),
                    at: at + Duration::minutes(9),
                },
            }),
        };
        let config = GrantConfig::of(&grant);
        let text = serde_json::to_string(&config).unwrap();
        let back: GrantConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(back.grant().unwrap(), grant);
        let mut broken = config.clone();
        broken.ended_side = None;
        assert!(broken.grant().is_err());
    }
}
