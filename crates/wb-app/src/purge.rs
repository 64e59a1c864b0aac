//! The customer's purge under its own retention rules (`POST
//! /api/v1/companies/{c}/purge`): entries before the horizon replaced by
//! opening entries, attachments and audit events past their rules removed,
//! the journal restarted at a signed anchor, and the backups made before it
//! deleted once a snapshot after it is shipped. A dry run reports exactly
//! what the purge would remove (the same transaction, rolled back).

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::{Date, OffsetDateTime, Time};
use utoipa::ToSchema;
use wb_core::audit::Checkpoint;
use wb_core::data_retention::DataRetention;
use wb_core::Action;
use wb_store::{AuditEvent, Outcome, PurgeCounts, PurgePlan, PurgeReport, StoreError};

use crate::access::CompanyScope;
use crate::backup::purged::{self, PurgedBackups};
use crate::error::{ServiceError, ServiceResult};
use crate::platform::Platform;
use crate::retention_rules::RetentionView;

/// Attempts when writes arrive between shipping the journal and the purge.
const ATTEMPTS: usize = 5;

/// `{"dry_run": true}` lists what would go; `entries_before`,
/// `attachments_before` and `audit_before` ask for earlier cut-offs than
/// the rules' (never later ones): a client that previewed sends back the
/// preview's, so the purge removes nothing the preview did not reach.
#[derive(Debug, Default, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    #[serde(default)]
    pub dry_run: bool,
    /// `YYYY-MM-DD`: purge entries before this date only.
    pub entries_before: Option<String>,
    /// `YYYY-MM-DD`: remove attachments created before this day only.
    pub attachments_before: Option<String>,
    /// `YYYY-MM-DD`: remove audit events from before this day only.
    pub audit_before: Option<String>,
    /// When given, the company's name as typed to confirm: a purge with
    /// another name is refused (422 `confirmation-mismatch`) and recorded.
    pub confirm: Option<String>,
}

/// One posting of an opening entry.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct OpeningPosting {
    pub account: String,
    pub amount: String,
}

/// An opening-balance entry that replaces the purged entries of a currency.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct OpeningView {
    pub id: i64,
    pub date: String,
    pub currency: String,
    pub postings: Vec<OpeningPosting>,
}

/// An attachment removed.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct AttachmentGone {
    pub id: i64,
    pub name: String,
    pub size: u64,
    pub created_at: String,
    pub entry_id: Option<i64>,
}

/// What a purge removed, or (dry run) would remove.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct PurgeView {
    pub company_id: String,
    pub dry_run: bool,
    /// Entries dated before this go (a reversal pair only whole).
    pub horizon: String,
    pub rules: RetentionView,
    /// Entries removed (SPEC §5; the same as `entries_removed`).
    pub entries: usize,
    /// Attachments removed.
    pub attachments: usize,
    /// Audit events removed.
    pub audit_events: u64,
    pub entries_removed: usize,
    /// The removed entry ids as inclusive ranges, ascending.
    pub entry_id_ranges: Vec<[i64; 2]>,
    pub postings_removed: u64,
    pub opening_entries: Vec<OpeningView>,
    /// Attachments created before this go unless linked to a kept entry.
    pub attachments_before: String,
    pub attachments_removed: Vec<AttachmentGone>,
    /// Audit events before this go, through the last signed checkpoint before it.
    pub audit_before: String,
    pub audit_through_seq: i64,
    pub audit_events_removed: u64,
    /// The journal record the anchor names ("purged through N, hash H").
    pub journal_through_seq: i64,
    pub journal_through_hash: String,
    pub anchor_seq: i64,
    /// Snapshots made before the purge (deleted once one after it is shipped).
    pub backup_snapshots_before: Vec<i64>,
    /// What went from the backups (None: not yet, or a dry run).
    pub backups: Option<PurgedBackups>,
    /// When nothing purged remains in the backups: now, or (when the object
    /// store could not take the new snapshot) at the next hourly round.
    pub gone_from_backups: String,
    pub before: CountsView,
    pub after: CountsView,
}

/// Row counts of the company database before and after.
#[derive(Debug, Clone, Copy, Serialize, ToSchema, PartialEq, Eq)]
pub struct CountsView {
    pub entries: u64,
    pub postings: u64,
    pub attachments: u64,
    pub audit_events: u64,
    pub journal_records: u64,
}

impl From<PurgeCounts> for CountsView {
    fn from(c: PurgeCounts) -> CountsView {
        CountsView {
            entries: c.entries,
            postings: c.postings,
            attachments: c.files,
            audit_events: c.audit_events,
            journal_records: c.journal_records,
        }
    }
}

fn parse_day(field: &str, text: &str) -> ServiceResult<Date> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(text, format).map_err(|_| {
        ServiceError::bad_request(
            "invalid-date",
            format!("{field} must be a date as YYYY-MM-DD, not {text:?}"),
        )
    })
}

fn ranges(ids: &[i64]) -> Vec<[i64; 2]> {
    let mut out: Vec<[i64; 2]> = Vec::new();
    for &id in ids {
        match out.last_mut() {
            Some(last) if last[1] + 1 == id => last[1] = id,
            _ => out.push([id, id]),
        }
    }
    out
}

/// One rule of a purge: what it keeps, and whether the statutory minimum
/// binds it.
struct Rule {
    /// The rule's field (`entries_years`, …), named in a refusal.
    name: &'static str,
    /// The request's field asking for an earlier cut-off.
    field: &'static str,
    /// What it keeps, for the refusal's sentence.
    keeps: &'static str,
    years: u32,
    statutory: bool,
}

/// The cut-off a rule allows today (1 January, `years` back), or the
/// earlier one asked for; a later one is refused naming the rule.
fn cut_off(
    platform: &Platform,
    rule: &Rule,
    today: Date,
    asked: Option<&str>,
) -> ServiceResult<Date> {
    let allowed = wb_core::purge::horizon(today, rule.years);
    let Some(asked) = asked else {
        return Ok(allowed);
    };
    let asked = parse_day(rule.field, asked)?;
    if asked <= allowed {
        return Ok(asked);
    }
    let minimum = platform.statutory_minimum().in_years();
    let (slug, name) = if rule.statutory && rule.years <= minimum {
        (
            "below-statutory-minimum",
            format!("statutory_minimum_years ({minimum} years)"),
        )
    } else {
        (
            "beyond-retention-rule",
            format!("{} ({} years)", rule.name, rule.years),
        )
    };
    Err(ServiceError::unprocessable(
        slug,
        format!(
            "refused by rule {name}: {} are kept at least {} years, so the latest {} today is {allowed}, not {asked}",
            rule.keeps, rule.years, rule.field
        ),
    ))
}

/// The three cut-offs of a purge today: entries (the horizon), attachments
/// and audit events.
fn cut_offs(
    platform: &Platform,
    rules: &DataRetention,
    today: Date,
    request: &PurgeRequest,
) -> ServiceResult<(Date, Date, Date)> {
    let entries = Rule {
        name: "entries_years",
        field: "entries_before",
        keeps: "entries",
        years: rules.entries_years,
        statutory: true,
    };
    let attachments = Rule {
        name: "attachments_years",
        field: "attachments_before",
        keeps: "attachments",
        years: rules.attachments_years,
        statutory: false,
    };
    let audit = Rule {
        name: "audit_years",
        field: "audit_before",
        keeps: "audit events",
        years: rules.audit_years,
        statutory: true,
    };
    Ok((
        cut_off(platform, &entries, today, request.entries_before.as_deref())?,
        cut_off(
            platform,
            &attachments,
            today,
            request.attachments_before.as_deref(),
        )?,
        cut_off(platform, &audit, today, request.audit_before.as_deref())?,
    ))
}

impl Platform {
    /// Whether a checkpoint is signed by a node key this deployment certified.
    async fn certified(&self, checkpoint: &Checkpoint) -> ServiceResult<bool> {
        let nodes = self.control.node_keys().await?;
        let certifiers = self.keyring().node_certifiers();
        Ok(nodes.iter().any(|n| {
            n.id == checkpoint.node
                && wb_crypto::verify_signature(
                    &n.public_key,
                    &checkpoint.message(),
                    &checkpoint.signature,
                )
                && n.certificate.as_deref().is_some_and(|c| {
                    certifiers
                        .iter()
                        .any(|k| k.is_certified(&n.id, &n.public_key, c))
                })
        }))
    }
}

impl CompanyScope {
    /// A dry run, or a purge without `confirm`, needs no name; with one it
    /// must be the company's name as shown.
    async fn confirmed(&self, platform: &Platform, request: &PurgeRequest) -> ServiceResult<()> {
        let Some(typed) = request.confirm.as_deref().filter(|_| !request.dry_run) else {
            return Ok(());
        };
        let company = self.company(platform).await?;
        if crate::restore_copy::confirms(typed, &company.name) {
            Ok(())
        } else {
            Err(ServiceError::unprocessable(
                "confirmation-mismatch",
                "type the company's name exactly as it is shown to confirm the purge",
            ))
        }
    }

    /// The newest certified checkpoint of the company's audit chain at an
    /// event older than `cutoff`: the purge drops the events through it,
    /// and the checkpoint vouches for where the kept chain starts.
    async fn audit_anchor(
        &self,
        platform: &Platform,
        cutoff: OffsetDateTime,
    ) -> ServiceResult<Option<(i64, String)>> {
        let source = crate::forwarder::company_source(self.company_id());
        let checkpoints = platform.control.checkpoints(&source).await?;
        let cutoff = crate::dto::rfc3339(cutoff);
        for cp in checkpoints.iter().rev() {
            let Some(event) = self
                .store()
                .audit_events(cp.seq - 1, 1)
                .await?
                .into_iter()
                .next()
            else {
                continue;
            };
            if event.seq != cp.seq || event.hash != cp.hash {
                continue;
            }
            let at =
                OffsetDateTime::parse(&event.at, &time::format_description::well_known::Rfc3339)
                    .map_err(|_| ServiceError::internal())?;
            let cutoff_at =
                OffsetDateTime::parse(&cutoff, &time::format_description::well_known::Rfc3339)
                    .map_err(|_| ServiceError::internal())?;
            if at < cutoff_at && platform.certified(cp).await? {
                return Ok(Some((cp.seq, cp.hash.clone())));
            }
        }
        Ok(None)
    }

    /// Purges (or, dry, reports) what the company's rules let go today.
    pub async fn purge(
        &self,
        platform: &Platform,
        request: PurgeRequest,
    ) -> ServiceResult<PurgeView> {
        let rules = platform.company_retention(self.company_id()).await?;
        let now = platform.now();
        let today = now.date();
        let checked = async {
            let cuts = cut_offs(platform, &rules, today, &request)?;
            self.confirmed(platform, &request).await?;
            ServiceResult::Ok(cuts)
        };
        let (horizon, files_day, audit_day) = match checked.await {
            Ok(cuts) => cuts,
            Err(refused) => {
                self.record(
                    platform,
                    AuditEvent {
                        at: now,
                        actor: self.actor().clone(),
                        company_id: Some(self.company_id().to_string()),
                        action: Action::DataPurge,
                        target: None,
                        outcome: Outcome::Failure,
                        detail: Some(refused.to_string()),
                    },
                )
                .await?;
                return Err(refused);
            }
        };
        let files_before = files_day.with_time(Time::MIDNIGHT).assume_utc();
        let audit_before = audit_day.with_time(Time::MIDNIGHT).assume_utc();
        let tenant = platform.tenant(self.company_id()).await?;
        let node = platform.node_id.clone();
        let key = platform.node_key.clone();
        let public_key = key.public_key_hex();
        let certificate = hex::encode(platform.node_certifier().certify(&node, &public_key));
        let signer: wb_store::purge::AnchorSigner =
            Arc::new(move |message: &[u8]| wb_store::purge::AnchorSignature {
                node: node.clone(),
                public_key: public_key.clone(),
                certificate: certificate.clone(),
                signature: key.sign(message),
            });
        let mut attempt = 0;
        let report: PurgeReport = loop {
            attempt += 1;
            let audit_through = self.audit_anchor(platform, audit_before).await?;
            let journal_head = if request.dry_run {
                tenant.stats().await?.journal_seq
            } else {
                purged::ship_now(platform, &tenant).await.map_err(|e| {
                    // The detail (the object store's answer) is the
                    // operators': the caller learns that nothing changed.
                    tracing::warn!(company = %self.company_id(), error = %format!("{e:#}"), "a purge waits for the journal to be shipped");
                    ServiceError::unavailable(
                        "the company's latest changes are not in backup storage yet; nothing was purged, try again in a minute",
                    )
                })?
            };
            let plan = PurgePlan {
                horizon,
                files_before,
                audit_through,
                journal_head,
                dry_run: request.dry_run,
                signer: signer.clone(),
            };
            match tenant.purge(plan, self.write_context(platform.now())).await {
                Err(StoreError::Conflict(_)) if attempt < ATTEMPTS => continue,
                Err(StoreError::Conflict(reason)) => {
                    return Err(ServiceError::conflict("purge-conflict", reason))
                }
                Err(e) => return Err(e.into()),
                Ok(report) => break report,
            }
        };
        let snapshots = match crate::backup::snapshot::list(platform, self.company_id()).await {
            Ok(list) => list,
            Err(e) => {
                tracing::warn!(company = %self.company_id(), error = %format!("{e:#}"), "the snapshots could not be listed");
                if request.dry_run {
                    return Err(ServiceError::unavailable(
                        "backup storage did not answer; nothing changed, try again in a minute",
                    ));
                }
                // The purge is done: its answer must say so (upkeep below
                // finds the snapshots itself).
                Vec::new()
            }
        };
        let snapshots_before: Vec<i64> = snapshots
            .into_iter()
            .filter(|s| *s < report.anchor_seq)
            .collect();
        let mut backups = None;
        let mut gone = "never: a dry run removes nothing".to_string();
        if request.dry_run {
            self.record(
                platform,
                AuditEvent {
                    at: platform.now(),
                    actor: self.actor().clone(),
                    company_id: Some(self.company_id().to_string()),
                    action: Action::DataPurgePreview,
                    target: Some(format!("horizon:{horizon}")),
                    outcome: Outcome::Success,
                    detail: Some(wb_store::purge::audit_detail(&report)),
                },
            )
            .await?;
        } else if report.anchor_seq == 0 {
            gone = "never: nothing was due to go".to_string();
            self.record(
                platform,
                AuditEvent {
                    at: platform.now(),
                    actor: self.actor().clone(),
                    company_id: Some(self.company_id().to_string()),
                    action: Action::DataPurge,
                    target: Some(format!("horizon:{horizon}")),
                    outcome: Outcome::Success,
                    detail: Some(format!(
                        "nothing before {horizon} was due to go; nothing changed"
                    )),
                },
            )
            .await?;
        } else {
            // The backups, audit segments, attachment objects and stored
            // exports that held what went: now, or at the next hourly round.
            match platform.purge_upkeep(self.company_id()).await {
                Ok(done) => {
                    backups = done.map(|d| d.backups);
                    gone = crate::dto::rfc3339(platform.now());
                }
                Err(e) => {
                    tracing::warn!(company = %self.company_id(), error = %format!("{e:#}"), "what a purge removed goes from the backups at the next round");
                    gone = format!(
                        "by {} (the next pruning round; backup storage could not take the new snapshot now)",
                        crate::dto::rfc3339(
                            platform.now() + crate::backup::snapshotter::PRUNE_EVERY
                        )
                    );
                }
            }
        }
        Ok(PurgeView {
            company_id: self.company_id().to_string(),
            dry_run: request.dry_run,
            horizon: horizon.to_string(),
            rules: platform.retention_view(&rules),
            entries: report.entries.len(),
            attachments: report.files.len(),
            audit_events: report.audit_events,
            entries_removed: report.entries.len(),
            entry_id_ranges: ranges(&report.entries),
            postings_removed: report.postings,
            opening_entries: report
                .opening
                .iter()
                .map(|e| OpeningView {
                    id: e.id,
                    date: e.date.to_string(),
                    currency: e
                        .postings
                        .first()
                        .map(|p| p.currency.code().to_string())
                        .unwrap_or_default(),
                    postings: e
                        .postings
                        .iter()
                        .map(|p| OpeningPosting {
                            account: p.account.clone(),
                            amount: p.currency.format(i128::from(p.amount)),
                        })
                        .collect(),
                })
                .collect(),
            attachments_before: crate::dto::rfc3339(files_before),
            attachments_removed: report
                .files
                .iter()
                .map(|f| AttachmentGone {
                    id: f.id,
                    name: f.name.clone(),
                    size: f.size,
                    created_at: crate::dto::rfc3339(f.created_at),
                    entry_id: f.entry_id,
                })
                .collect(),
            audit_before: crate::dto::rfc3339(audit_before),
            audit_through_seq: report.audit_through,
            audit_events_removed: report.audit_events,
            journal_through_seq: report.journal_through,
            journal_through_hash: report.journal_through_hash.clone(),
            anchor_seq: report.anchor_seq,
            backup_snapshots_before: snapshots_before,
            backups,
            gone_from_backups: gone,
            before: report.before.into(),
            after: report.after.into(),
        })
    }
}
