//! `workbooks audit verify`: checks every audit chain of a deployment — the
//! control plane's and each company's, where they are written, and their copies
//! in the central collection — against the signed checkpoints.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use wb_core::audit::{self, ChainedEvent, Checkpoint, Signer};
use wb_crypto::{verify_signature, NodeCertifier};
use wb_store::{CentralEvent, RegisteredNode, StoredAuditEvent};

use crate::error::ServiceResult;
use crate::forwarder::{company_source, CONTROL_SOURCE};
use crate::platform::Platform;

const PAGE: u32 = 10_000;

/// Whether the chain records the purge that dropped its events through
/// `through`: a successful `data.purge` event whose detail names that
/// `audit_through` (a trail that starts later without one was cut).
pub(crate) fn purge_accounts_for(events: &[ChainedEvent], through: i64) -> bool {
    events.iter().any(|e| {
        e.fields.action == wb_core::Action::DataPurge.as_str()
            && e.fields.outcome == "success"
            && serde_json::from_str::<serde_json::Value>(&e.fields.detail)
                .ok()
                .and_then(|d| d["audit_through"].as_i64())
                == Some(through)
    })
}

/// The outcome for one chain.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ChainReport {
    /// "control" or "company:<id>", and where it was read: "local" or "central".
    pub source: String,
    pub copy: &'static str,
    pub events: u64,
    pub last_seq: i64,
    pub checkpoints: usize,
    pub last_checkpoint_at: Option<String>,
    /// The first problem found, in words; None when the chain verifies.
    pub problem: Option<String>,
    /// The last event a purge under the retention rules removed (0: none).
    pub purged_through: i64,
}

/// The registered node keys, each with whether the master key certified it.
/// The `nodes` table is in the database the checkpoints protect, so a row
/// proves nothing by itself: only its certificate does.
struct NodeKeys(HashMap<String, (String, bool)>);

impl NodeKeys {
    /// `certifiers`: of every master key held (a rotation re-issues certificates).
    fn new(nodes: Vec<RegisteredNode>, certifiers: &[NodeCertifier]) -> NodeKeys {
        NodeKeys(
            nodes
                .into_iter()
                .map(|n| {
                    let certified = n.certificate.as_deref().is_some_and(|c| {
                        certifiers
                            .iter()
                            .any(|k| k.is_certified(&n.id, &n.public_key, c))
                    });
                    (n.id, (n.public_key, certified))
                })
                .collect(),
        )
    }

    fn none() -> NodeKeys {
        NodeKeys(HashMap::new())
    }

    fn signer(&self, cp: &Checkpoint) -> Signer {
        match self.0.get(&cp.node) {
            Some((pk, certified)) if verify_signature(pk, &cp.message(), &cp.signature) => {
                if *certified {
                    Signer::Certified
                } else {
                    Signer::Uncertified
                }
            }
            _ => Signer::Invalid,
        }
    }
}

/// `known_purge`: the last event a purge removed, as the verified local
/// chain of the same source established (0: none known). A copy may then
/// start right after it (or hold nothing collected since) without its own
/// `data.purge` event, which it may not have collected yet.
fn report(
    source: &str,
    copy: &'static str,
    events: &[ChainedEvent],
    checkpoints: &[Checkpoint],
    keys: &NodeKeys,
    known_purge: i64,
) -> ChainReport {
    let later: Vec<Checkpoint>;
    let checkpoints = if known_purge > 0 && events.is_empty() {
        later = checkpoints
            .iter()
            .filter(|cp| cp.seq > known_purge)
            .cloned()
            .collect();
        &later[..]
    } else {
        checkpoints
    };
    // Without a signed checkpoint, a chain rewritten end to end would still
    // link up: only a checkpoint (or a drain's copy) can tell.
    let unvouched = copy != "file" && !events.is_empty() && checkpoints.is_empty();
    let verified =
        audit::verify_certified(events, checkpoints, |cp| keys.signer(cp)).and_then(|v| {
            if v.purged_through > 0
                && v.purged_through != known_purge
                && !purge_accounts_for(events, v.purged_through)
            {
                // A certified checkpoint vouches for the start, but nothing in
                // the chain says a purge removed what came before it.
                return Err(audit::ChainError::Deleted {
                    expected: 1,
                    found: v.purged_through + 1,
                });
            }
            Ok(v)
        });
    match verified {
        Ok(v) if unvouched => ChainReport {
            source: source.to_string(),
            copy,
            events: v.events,
            last_seq: v.last_seq,
            checkpoints: 0,
            last_checkpoint_at: None,
            problem: Some("no signed checkpoint covers this chain (yet: one is written within 10 s of activity)".into()),
            purged_through: v.purged_through,
        },
        Ok(v) => ChainReport {
            source: source.to_string(),
            copy,
            events: v.events,
            last_seq: v.last_seq,
            checkpoints: checkpoints.len(),
            last_checkpoint_at: v.last_checkpoint.map(|c| c.at),
            problem: None,
            purged_through: v.purged_through,
        },
        Err(e) => ChainReport {
            source: source.to_string(),
            copy,
            events: events.len() as u64,
            last_seq: events.last().map_or(0, |e| e.seq),
            checkpoints: checkpoints.len(),
            last_checkpoint_at: None,
            problem: Some(e.to_string()),
            purged_through: 0,
        },
    }
}

async fn central_chain(platform: &Platform, source: &str) -> ServiceResult<Vec<CentralEvent>> {
    let mut out = Vec::new();
    loop {
        let after = out.last().map_or(0, |e: &CentralEvent| e.event.seq);
        let page = platform
            .control
            .central_source_events(source, after, PAGE)
            .await?;
        if page.is_empty() {
            return Ok(out);
        }
        out.extend(page);
    }
}

async fn local_control_chain(platform: &Platform) -> ServiceResult<Vec<StoredAuditEvent>> {
    let mut out = Vec::new();
    loop {
        let after = out.last().map_or(0, |e: &StoredAuditEvent| e.seq);
        let page = platform.control.audit_events(None, after, PAGE).await?;
        if page.is_empty() {
            return Ok(out);
        }
        out.extend(page);
    }
}

async fn local_company_chain(
    platform: &Platform,
    company: &str,
) -> ServiceResult<Vec<StoredAuditEvent>> {
    let store = platform.tenant(company).await?;
    let mut out = Vec::new();
    loop {
        let after = out.last().map_or(0, |e: &StoredAuditEvent| e.seq);
        let page = store.audit_events(after, PAGE).await?;
        if page.is_empty() {
            return Ok(out);
        }
        out.extend(page);
    }
}

/// A central copy must hold the same events as the chain it copies, up to
/// where it has been collected.
fn compare_copies(local: &[StoredAuditEvent], central: &[CentralEvent]) -> Option<String> {
    // A local chain purged under the retention rules starts later; the
    // central copy is compared from there.
    let start = local.first().map_or(0, |e| e.seq);
    let central = &central[central.partition_point(|c| c.event.seq < start)..];
    for (l, c) in local.iter().zip(central) {
        if l.seq != c.event.seq || l.hash != c.event.hash {
            return Some(format!(
                "the central copy differs from the local chain at event {}",
                l.seq.min(c.event.seq)
            ));
        }
    }
    if central.len() > local.len() {
        return Some(format!(
            "the central copy has events up to {} but the local chain ends at {} (local truncated)",
            central.last().map_or(0, |c| c.event.seq),
            local.last().map_or(0, |l| l.seq)
        ));
    }
    None
}

/// Verifies every chain, one source at a time; the reports say which verified
/// and the first problem of each that did not. A company that cannot be opened
/// is reported, not fatal.
pub async fn verify_deployment(platform: &Platform) -> ServiceResult<Vec<ChainReport>> {
    let keys = NodeKeys::new(
        platform.control.node_keys().await?,
        &platform.keyring().node_certifiers(),
    );
    let companies: BTreeSet<String> = platform.company_ids().await?.into_iter().collect();
    let mut sources: BTreeSet<String> = companies.iter().map(|c| company_source(c)).collect();
    sources.insert(CONTROL_SOURCE.to_string());
    sources.extend(platform.control.central_sources().await?);
    let mut reports = Vec::new();
    for source in sources {
        let local = if source == CONTROL_SOURCE {
            Some(
                local_control_chain(platform)
                    .await
                    .map_err(|e| e.to_string()),
            )
        } else {
            match source
                .strip_prefix("company:")
                .filter(|id| companies.contains(*id))
            {
                Some(id) => Some(
                    local_company_chain(platform, id)
                        .await
                        .map_err(|e| e.to_string()),
                ),
                None => None,
            }
        };
        let checkpoints = platform.control.checkpoints(&source).await?;
        let central = central_chain(platform, &source).await?;
        match local {
            Some(Ok(local)) => {
                let chained: Vec<ChainedEvent> =
                    local.iter().map(StoredAuditEvent::chained).collect();
                let mut r = report(&source, "local", &chained, &checkpoints, &keys, 0);
                if r.problem.is_none() {
                    r.problem = compare_copies(&local, &central);
                }
                reports.push(r);
            }
            Some(Err(e)) => reports.push(ChainReport {
                source: source.clone(),
                copy: "local",
                events: 0,
                last_seq: 0,
                checkpoints: checkpoints.len(),
                last_checkpoint_at: None,
                problem: Some(format!("cannot be read: {e}")),
                purged_through: 0,
            }),
            None => {}
        }
        let known_purge = reports
            .last()
            .filter(|r| r.source == source && r.copy == "local" && r.problem.is_none())
            .map_or(0, |r| r.purged_through);
        let central_chained: Vec<ChainedEvent> =
            central.iter().map(|c| c.event.chained()).collect();
        reports.push(report(
            &source,
            "central",
            &central_chained,
            &checkpoints,
            &keys,
            known_purge,
        ));
    }
    Ok(reports)
}

/// Verifies a JSON-lines export (a drain file) per source, without checkpoints.
pub fn verify_records(records: &[StoredAuditEventWithSource]) -> Vec<ChainReport> {
    let mut by_source: BTreeMap<&str, Vec<ChainedEvent>> = BTreeMap::new();
    for r in records {
        by_source
            .entry(&r.source)
            .or_default()
            .push(r.event.chained());
    }
    by_source
        .into_iter()
        .map(|(source, events)| report(source, "file", &events, &[], &NodeKeys::none(), 0))
        .collect()
}

/// One line of a drain export, reduced to what verification needs.
#[derive(Debug, Clone)]
pub struct StoredAuditEventWithSource {
    pub source: String,
    pub event: StoredAuditEvent,
}

/// Parses a JSON-lines drain export (`jsonl://` drain or syslog message bodies).
pub fn parse_jsonl(text: &str) -> Result<Vec<StoredAuditEventWithSource>, String> {
    let mut out = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("line {}: not JSON: {e}", n + 1))?;
        let text = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
        let required = |k: &str| text(k).ok_or_else(|| format!("line {}: missing {k}", n + 1));
        out.push(StoredAuditEventWithSource {
            source: required("source")?,
            event: StoredAuditEvent {
                seq: v
                    .get("seq")
                    .and_then(|x| x.as_i64())
                    .ok_or_else(|| format!("line {}: missing seq", n + 1))?,
                at: required("at")?,
                actor: required("actor")?,
                auth: required("auth")?,
                client: text("client"),
                request_id: text("request_id"),
                company_id: text("company_id"),
                action: required("action")?,
                target: text("target"),
                outcome: required("outcome")?,
                detail: text("detail"),
                prev_hash: required("prev_hash")?,
                hash: required("hash")?,
            },
        });
    }
    Ok(out)
}

/// A company's own chain as its audit viewer shows it: the newest signed
/// checkpoint that vouches for it (a full verification is on request).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompanyChainStatus {
    /// The newest checkpoint's sequence number and time.
    pub last_checkpoint: Option<(i64, String)>,
}

impl crate::access::CompanyScope {
    pub async fn audit_chain_status(
        &self,
        platform: &Platform,
    ) -> ServiceResult<CompanyChainStatus> {
        let last = platform
            .control
            .last_checkpoint(&company_source(self.company_id()))
            .await?;
        Ok(CompanyChainStatus {
            last_checkpoint: last.map(|c| (c.seq, c.at)),
        })
    }

    /// Verifies the company's chain where it is written against the signed
    /// checkpoints (reads the whole chain: on request only).
    pub async fn verify_audit_chain(&self, platform: &Platform) -> ServiceResult<ChainReport> {
        let keys = NodeKeys::new(
            platform.control.node_keys().await?,
            &platform.keyring().node_certifiers(),
        );
        let source = company_source(self.company_id());
        let checkpoints = platform.control.checkpoints(&source).await?;
        let local = local_company_chain(platform, self.company_id()).await?;
        let chained: Vec<ChainedEvent> = local.iter().map(StoredAuditEvent::chained).collect();
        Ok(report(&source, "local", &chained, &checkpoints, &keys, 0))
    }
}
